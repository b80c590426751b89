//! Prometheus metrics for Causeway. A placeholder until the observability
//! work fills it: the seam exists so sessions and pools can take cached
//! handles from here without depending on an exporter.
