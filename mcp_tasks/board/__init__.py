"""The web board: pages for people, served beside /mcp."""
