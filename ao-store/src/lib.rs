//! ao-store
