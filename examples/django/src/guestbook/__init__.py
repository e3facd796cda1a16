"""The guestbook app: entries written on the primary, read from the replicas, counted by RQ."""
