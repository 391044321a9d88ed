"""What both HTTP APIs share: app factory, problems, auth, health, telemetry, positions."""
