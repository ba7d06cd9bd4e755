-- Names in local scripts (docs/qr-formats.md, "Names in local scripts"). A merchant's or
-- biller's name and city may be written in any script, the pilot's Chinese among them.
-- Its QR codes then carry them in the language template (EMVCo 64) and, in fields 59
-- and 60, these forms in EMV's character set, or the stated fallback when there are none.
ALTER TABLE merchants ADD COLUMN name_latin TEXT;          -- EMVCo 59 when the name is not in EMV's characters
ALTER TABLE merchants ADD COLUMN name_language TEXT;       -- EMVCo 64/00, ISO 639-1 upper case; null: ZH
ALTER TABLE bill_billers ADD COLUMN city_latin TEXT;       -- EMVCo 60 when the biller's city is not in EMV's characters
ALTER TABLE checkout_profiles ADD COLUMN city_latin TEXT;  -- the same for a shop's city
