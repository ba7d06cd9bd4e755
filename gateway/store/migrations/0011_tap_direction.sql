-- Tap direction: "on" at a bus's entry validator, "off" at its exit validator. Tap-offs end
-- account-based trips on zone and distance routes; a purse tap-off moves no money. Rows
-- uploaded before this migration are tap-ons.
ALTER TABLE transit_taps ADD COLUMN direction TEXT NOT NULL DEFAULT 'on';
