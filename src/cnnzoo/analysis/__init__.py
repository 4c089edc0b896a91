"""Looking at models and runs: what they cost (cost) and pictures of them (report)."""
