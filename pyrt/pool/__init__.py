"""The warm pool, its metering (Usage), bench profiles and pyperf output."""
