"""Install and in-app event attribution: touchpoints, partner postbacks, windows and conversions."""
