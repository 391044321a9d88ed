"""The booking saga: follows the three logs and drives each booking to its end."""
