"""Server-Sent Event streams: committed history rows, fanned out to subscribers."""
