"""hermetry: telemetry and analytics for the Hermes Agent."""
__version__ = "0.1.0"
