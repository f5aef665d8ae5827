"""The audit itself: its measuring time, batch audits across workers, the sample audits and the browser check."""
