-- The full verdict of each attempt, so `heal apply FIX_ID` can apply a suggestion later.
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS verdict text NOT NULL DEFAULT '';
