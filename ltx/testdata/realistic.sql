PRAGMA page_size=4096;
PRAGMA journal_mode=DELETE;
CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, age INTEGER, bio TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2500)
INSERT INTO users(name, email, age, bio)
SELECT 'user-' || i,
       'user' || i || '@example.' || (CASE i % 3 WHEN 0 THEN 'com' WHEN 1 THEN 'org' ELSE 'net' END),
       18 + (i * 7919) % 70,
       'bio of user ' || i || ': ' || substr(hex(randomblob(24)), 1, 20 + (i % 40))
FROM n;
CREATE INDEX users_email ON users(email);
CREATE INDEX users_age ON users(age, name);
