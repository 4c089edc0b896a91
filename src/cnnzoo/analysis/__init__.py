"""Looking at models and runs: what they cost (cost), how well they score (metrics) and
pictures of them (report)."""
