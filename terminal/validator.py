"""Names tapstack.demo imports from here: the decision of a tap is terminal/card.py now."""
from terminal.card import Decision, Place  # kept for tapstack.demo until it starts terminals by command
