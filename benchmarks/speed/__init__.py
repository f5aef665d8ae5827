"""Speed against a floor: import time, the lm-eval bridge, the key statistics at scale."""
