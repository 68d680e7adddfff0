"""Python reference implementations for titand (the specs the C++ code is tested against)."""
