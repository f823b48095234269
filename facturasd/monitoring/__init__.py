"""Health, metrics and alerts: what the daemon says about itself."""
