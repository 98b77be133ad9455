"""Tools for running the product locally: a mosquitto process, a daemon process, replay, the demo.

Never imported by the gateway runtime.
"""
