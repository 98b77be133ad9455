"""Applications on the broker's other side: the alert subscriber, the live alerts view, deploy (torch-free)."""
