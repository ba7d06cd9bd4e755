# The tests import the card as `from coffee_card import CoffeeCard`, whatever pytest's import
# mode (tapstack's own repository runs pytest with --import-mode=importlib, which leaves
# sys.path alone). The fixtures (field, tapstack_cards) come from tapstack's pytest plugin,
# which an installed tapstack registers by itself.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
