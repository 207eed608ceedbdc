"""What measures and demonstrates the product, without being part of it: `mcp-tasks bench` and
`mcp-tasks demo`. Nothing outside this package imports it, except the CLI's entry points."""
