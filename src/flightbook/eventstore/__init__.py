"""Event store plumbing on top of eventsourcing: metadata, personal-data sealing, recorders."""
