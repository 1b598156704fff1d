"""What outlives a process: checkpoints (and their safety checks and resharding), exported generator files,
storage on a file system or under a URI, and the run directory."""
