//! qpci Admin API wire protocol and the JSON types of qpci's extension methods.
