"""Ray Serve embedding endpoints for exported encoders, and a small client."""
