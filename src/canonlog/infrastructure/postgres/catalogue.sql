-- Every fact about the canonlog schema that decides who may do what, one line
-- each: owners, privileges (table, column, sequence, function, schema), the
-- security mode and settings of every function, every trigger and its state,
-- every rule, the attributes of the canonlog_* roles and their memberships.
-- The owner of canonlog.schema_migrations is whoever ran the migrations, so it
-- is named by its part, not its name.
WITH objects AS (
    SELECT 'schema canonlog' AS object, n.nspowner AS owner, n.nspacl AS acl, 'n' AS kind
    FROM pg_namespace n WHERE n.nspname = 'canonlog'
    UNION ALL
    SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view '
                          WHEN 'm' THEN 'materialized view ' ELSE 'table ' END
           || 'canonlog.' || c.relname,
           c.relowner, c.relacl, CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'canonlog' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    UNION ALL
    SELECT 'function canonlog.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')', p.proowner, p.proacl, 'f'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'canonlog'
),
runner AS (
    SELECT c.relowner AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'canonlog' AND c.relname = 'schema_migrations'
),
named AS (
    SELECT o.*, CASE WHEN o.owner = (SELECT oid FROM runner)
                          AND o.object = 'table canonlog.schema_migrations'
                     THEN '(the migration runner)' ELSE pg_get_userbyid(o.owner) END AS owner_name
    FROM objects o
)
SELECT object || ' is owned by ' || owner_name AS fact FROM named
UNION ALL
SELECT 'grant ' || a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
       || ' on ' || o.object || ' to '
       || CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
FROM named o, aclexplode(coalesce(o.acl, acldefault(o.kind::"char", o.owner))) a
WHERE a.grantee <> o.owner
UNION ALL
SELECT 'grant ' || a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
       || ' on column ' || at.attname || ' of canonlog.' || c.relname || ' to '
       || CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
FROM pg_attribute at
JOIN pg_class c ON c.oid = at.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(at.attacl) a
WHERE n.nspname = 'canonlog' AND at.attacl IS NOT NULL
UNION ALL
SELECT 'function canonlog.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ') is ' || CASE WHEN p.prosecdef THEN 'SECURITY DEFINER' ELSE 'SECURITY INVOKER' END
       || ' with ' || coalesce(array_to_string(p.proconfig, ', '), 'no settings')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'canonlog'
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' is '
       || CASE t.tgenabled WHEN 'A' THEN 'enabled ALWAYS' WHEN 'O' THEN 'enabled for origin sessions'
                           WHEN 'R' THEN 'enabled for replicas' ELSE 'disabled' END
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'canonlog' AND NOT t.tgisinternal
UNION ALL
SELECT 'rule ' || r.rulename || ' on canonlog.' || c.relname || ': ' || pg_get_ruledef(r.oid)
FROM pg_rewrite r
JOIN pg_class c ON c.oid = r.ev_class
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'canonlog' AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'role ' || r.rolname || ' is '
       || concat_ws(' ', CASE WHEN r.rolsuper THEN 'SUPERUSER' ELSE 'NOSUPERUSER' END,
                    CASE WHEN r.rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END,
                    CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
                    CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                    CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                    CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END)
FROM pg_roles r WHERE r.rolname IN ('canonlog_owner', 'canonlog_reader', 'canonlog_writer',
                                    'canonlog_operator', 'canonlog_relay')
UNION ALL
SELECT 'role ' || pg_get_userbyid(m.member) || ' is a member of ' || pg_get_userbyid(m.roleid)
FROM pg_auth_members m
WHERE pg_get_userbyid(m.member) IN ('canonlog_owner', 'canonlog_reader', 'canonlog_writer',
                                    'canonlog_operator', 'canonlog_relay')
