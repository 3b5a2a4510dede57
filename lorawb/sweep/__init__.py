"""One-change sweeps: plan and queue them (plan), rank their matrices (report), draw the answer (chart)."""
