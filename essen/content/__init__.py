"""Default conversation content shipped with ESSEN."""
