//! The qvm-* command-line tools.
