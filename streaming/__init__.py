"""Streaming half of the smart-access platform: contracts, simulator, consumer, sink."""
