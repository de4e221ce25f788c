"""The canonlog schema migrations, shipped as package data."""
