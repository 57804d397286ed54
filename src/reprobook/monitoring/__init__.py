"""Life after deployment: reference profile, capture, batch monitoring, deployment patterns."""
