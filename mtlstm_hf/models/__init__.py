"""Model definitions. Each subfolder holds the files that travel to the Hub with a checkpoint."""
