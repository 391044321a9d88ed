"""The agreements between processes: the wire envelope and payloads, the read-model schema."""
