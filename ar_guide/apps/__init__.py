"""Command-line applications: thin layers that wire sources, the pipeline and outputs together."""
