"""Names tapstack.demo imports from here, where the bus validator used to live: it is now
terminal/bus.py (the desk), terminal/settings.py and terminal/frames.py."""
from terminal.bus import Validator  # kept for tapstack.demo until it starts terminals by command
from terminal.frames import read_qr_text  # kept for tapstack.demo until it starts terminals by command
from terminal.settings import Settings, default_terminal_id  # kept for tapstack.demo until it starts terminals by command
