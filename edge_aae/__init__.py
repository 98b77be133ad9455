"""edge-aae: adversarial-autoencoder anomaly detection for industrial sensor streams.

The package root imports nothing heavy: ``edge_aae.gateway`` must stay importable
without torch. Import :class:`edge_aae.train.detector.AAEDetector` for the training API.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
