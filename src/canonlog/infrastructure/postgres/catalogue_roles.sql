-- Every way a role that writes, reads, relays or operates holds more power than that:
-- it is a superuser, a member of canonlog_owner, or owns a canonlog object.
-- $1 true checks the session's own login; false checks the runtime roles and
-- every role that is a member of one of them, directly or not.
WITH RECURSIVE members AS (
    SELECT r.oid FROM pg_roles r
    WHERE r.rolname IN ('canonlog_reader', 'canonlog_writer', 'canonlog_operator', 'canonlog_relay')
    UNION
    SELECT m.member FROM pg_auth_members m JOIN members ON m.roleid = members.oid
),
runtime AS (
    SELECT r.oid, r.rolname, r.rolsuper FROM pg_roles r
    WHERE CASE WHEN $1::boolean THEN r.rolname = session_user
               ELSE r.oid IN (SELECT oid FROM members) END
),
owned AS (
    SELECT n.nspowner AS owner, 'schema canonlog' AS object
    FROM pg_namespace n WHERE n.nspname = 'canonlog'
    UNION ALL
    SELECT c.relowner, 'canonlog.' || c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'canonlog'
    UNION ALL
    SELECT p.proowner, 'function canonlog.' || p.proname
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'canonlog'
)
SELECT 'role ' || rolname || ' is a superuser' AS problem FROM runtime WHERE rolsuper
UNION ALL
SELECT 'role ' || rolname || ' is a member of canonlog_owner' FROM runtime
WHERE rolname <> 'canonlog_owner' AND pg_has_role(oid, 'canonlog_owner', 'MEMBER')
UNION ALL
SELECT 'role ' || r.rolname || ' owns ' || o.object FROM runtime r JOIN owned o ON o.owner = r.oid
