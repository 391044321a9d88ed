"""Configuration of a process: its settings and where the project's files are."""
