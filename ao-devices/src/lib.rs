//! ao-devices
