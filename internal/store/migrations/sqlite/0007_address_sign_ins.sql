-- Verified addresses whose person has signed in (issue 10): a record that a
-- tenant created for an address leaves the tenant's custody as soon as the
-- person with that verified address calls the API, under whatever id their
-- token carries. Only a SHA-256 of the normalised address is kept.
CREATE TABLE address_sign_ins (
  address_hash TEXT PRIMARY KEY,
  first_at     TEXT NOT NULL
);
