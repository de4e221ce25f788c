-- The database holds payloads and metadata to canonical JSON v1
-- (docs/reference/hash-spec.md, section 1): a direct caller of the append
-- function cannot store bytes that canonlog's own encoder would not produce.
--
-- jsonb alone cannot judge this: it keeps the last of two equal keys, accepts
-- numbers no double can hold, and rewrites numbers and whitespace. So the text
-- received is parsed, the parsed value written again in canonical form, and the
-- two compared byte for byte: a duplicate key, a member out of order, whitespace,
-- a needless escape or a non-canonical number makes them differ. Only a text
-- that differs, or that holds a float or a long integer, is examined further.
-- Nothing here runs a PL/pgSQL EXCEPTION block: a subtransaction per event
-- would overflow the subtransaction cache in large batches.

SET LOCAL ROLE canonlog_owner;

-- The canonical JSON v1 text of a jsonb value at nesting depth p_depth (0 for a
-- payload): keys in code point order (the byte order of UTF-8, hence COLLATE
-- "C"), no whitespace, strings escaped as jsonb writes them (exactly the minimal
-- escapes of canonical JSON v1). Numbers are written as jsonb writes them, which
-- is their canonical form for integers and positional floats, or left out when
-- p_numbers is false. A container holding values deeper than 64 levels yields
-- NULL, and its member is then left out of its parent's text, so that text
-- cannot equal the input.
CREATE FUNCTION canonlog.canonical_text_v1(p jsonb, p_depth integer, p_numbers boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $body$
DECLARE
    v_text text;
BEGIN
    IF p_depth >= 64 THEN
        RETURN CASE WHEN p = '{}'::jsonb OR p = '[]'::jsonb THEN p::text END;
    END IF;
    IF jsonb_typeof(p) = 'object' THEN
        SELECT '{' || coalesce(string_agg(to_json(e.key)::text || ':' || CASE jsonb_typeof(e.value)
                   WHEN 'object' THEN canonlog.canonical_text_v1(e.value, p_depth + 1, p_numbers)
                   WHEN 'array' THEN canonlog.canonical_text_v1(e.value, p_depth + 1, p_numbers)
                   WHEN 'number' THEN CASE WHEN p_numbers THEN e.value::text ELSE '' END
                   ELSE e.value::text END, ',' ORDER BY e.key COLLATE "C"), '') || '}'
        INTO v_text
        FROM jsonb_each(p) AS e;
    ELSE
        SELECT '[' || coalesce(string_agg(CASE jsonb_typeof(a.value)
                   WHEN 'object' THEN canonlog.canonical_text_v1(a.value, p_depth + 1, p_numbers)
                   WHEN 'array' THEN canonlog.canonical_text_v1(a.value, p_depth + 1, p_numbers)
                   WHEN 'number' THEN CASE WHEN p_numbers THEN a.value::text ELSE '' END
                   ELSE a.value::text END, ',' ORDER BY a.i), '') || ']'
        INTO v_text
        FROM jsonb_array_elements(p) WITH ORDINALITY AS a(value, i);
    END IF;
    RETURN v_text;
END
$body$;
REVOKE ALL ON FUNCTION canonlog.canonical_text_v1(jsonb, integer, boolean) FROM PUBLIC;

-- The number tokens of a JSON text, in order: a string is matched whole, so that
-- digits inside strings are skipped.
CREATE FUNCTION canonlog.number_tokens_v1(p text)
RETURNS TABLE (token text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
SELECT m[1] FROM regexp_matches(p, '"(?:[^"\\]|\\.)*"|(-?[0-9][-+.eE0-9]*)', 'g') AS m
WHERE m[1] IS NOT NULL
$body$;
REVOKE ALL ON FUNCTION canonlog.number_tokens_v1(text) FROM PUBLIC;

-- Why a number token is out of canonical JSON v1's range, or NULL: an integer
-- token (no fraction, no exponent) outside the signed 64-bit range, or a float
-- token that rounds to infinity as a double (at or beyond the midpoint between
-- the largest double and 2^1024). The words are those of canonlog.domain.canonical.
CREATE FUNCTION canonlog.number_range_problem_v1(p text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
SELECT CASE
    WHEN p !~ '[.eE]' THEN
        CASE WHEN octet_length(p) > 100 THEN
                 format('contains an integer of %s digits, outside the signed 64-bit range',
                        octet_length(ltrim(p, '-')))
             WHEN p::numeric NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
                 format('contains the integer %s, outside the signed 64-bit range', p)
        END
    WHEN abs(p::numeric) >= 179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792 THEN
        format('contains the number %s, which is out of range for a double', p)
END
$body$;
REVOKE ALL ON FUNCTION canonlog.number_range_problem_v1(text) FROM PUBLIC;

-- The shortest decimal that reads back as p, and of those the closest:
-- PostgreSQL's float8 output (shortest round-trip while extra_float_digits is
-- positive, hence the setting), shortened further while a rounding of it to one
-- digit fewer still reads back as p. PostgreSQL's output leaves out a shorter
-- decimal that lies exactly halfway to the next double and reads back by
-- round-half-even (1e23 is written 9.999999999999999e+22); canonical JSON v1,
-- like Python's repr, takes it.
CREATE FUNCTION canonlog.shortest_decimal_v1(p float8)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET extra_float_digits = 1
AS $body$
DECLARE
    v_value numeric := p::text::numeric;
    v_digits integer;
    v_exponent integer;
    v_rounded numeric;
BEGIN
    LOOP
        v_digits := length(trim(BOTH '0' FROM replace(abs(v_value)::text, '.', '')));
        EXIT WHEN v_digits <= 1;
        IF abs(v_value) >= 1 THEN
            v_exponent := length(trunc(abs(v_value))::text) - 1;
        ELSE
            v_exponent := -1 - (length(split_part(abs(v_value)::text, '.', 2))
                                - length(ltrim(split_part(abs(v_value)::text, '.', 2), '0')));
        END IF;
        v_rounded := round(v_value, v_digits - 2 - v_exponent);
        EXIT WHEN abs(v_rounded) > 1.7976931348623157e308 OR v_rounded::float8 <> p;
        v_value := v_rounded;
    END LOOP;
    RETURN v_value;
END
$body$;
REVOKE ALL ON FUNCTION canonlog.shortest_decimal_v1(float8) FROM PUBLIC;

-- Whether a float token is the shortest decimal of the double it reads as. Tokens
-- that read as no double (beyond the largest, or below the smallest subnormal but
-- not zero) are refused before the cast, which would raise for them.
CREATE FUNCTION canonlog.is_shortest_double_v1(p text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
SELECT CASE
    WHEN p::numeric = 0 THEN true
    WHEN abs(p::numeric) > 1.7976931348623157e308
         OR abs(p::numeric) < 4.9406564584124654e-324 THEN false
    ELSE canonlog.shortest_decimal_v1(p::float8) = p::numeric
END
$body$;
REVOKE ALL ON FUNCTION canonlog.is_shortest_double_v1(text) FROM PUBLIC;

-- Whether a number token in range is written in canonical form: an integer in
-- plain decimal ("-0" is written "0"); a float in the shortest digits that read
-- back as the same double, positional for decimal exponents -4 to 15 (with ".0"
-- when it has no fraction) and otherwise d.ddde+XX.
CREATE FUNCTION canonlog.is_canonical_number_v1(p text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $body$
SELECT CASE
    WHEN p ~ '^-?(0|[1-9][0-9]*)$' THEN p <> '-0'
    WHEN p ~ '^-?(0|[1-9][0-9]{0,15})\.(0|[0-9]*[1-9])$' THEN
        p !~ '^-?0\.0000' AND canonlog.is_shortest_double_v1(p)
    WHEN p ~ '^-?[1-9](\.[0-9]*[1-9])?e[-+]([0-9]{2}|[1-9][0-9]{2})$' THEN
        split_part(p, 'e', 2)::integer NOT BETWEEN -4 AND 15
        AND canonlog.is_shortest_double_v1(p)
    ELSE false
END
$body$;
REVOKE ALL ON FUNCTION canonlog.is_canonical_number_v1(text) FROM PUBLIC;

-- The first key that occurs twice in one object, written as a JSON string, or
-- NULL: objects in document order, each before the objects inside it, and in an
-- object the key whose first occurrence comes first. json (not jsonb) keeps
-- every occurrence.
CREATE FUNCTION canonlog.duplicate_key_v1(p json)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $body$
DECLARE
    v_key text;
    v_value json;
BEGIN
    IF json_typeof(p) = 'object' THEN
        SELECT to_json(e.key)::text INTO v_key
        FROM json_each(p) WITH ORDINALITY AS e(key, value, i)
        GROUP BY e.key HAVING count(*) > 1 ORDER BY min(e.i) LIMIT 1;
        IF v_key IS NOT NULL THEN
            RETURN v_key;
        END IF;
        FOR v_value IN SELECT e.value FROM json_each(p) AS e LOOP
            IF json_typeof(v_value) IN ('object', 'array') THEN
                v_key := canonlog.duplicate_key_v1(v_value);
                IF v_key IS NOT NULL THEN
                    RETURN v_key;
                END IF;
            END IF;
        END LOOP;
    ELSIF json_typeof(p) = 'array' THEN
        FOR v_value IN SELECT a.value FROM json_array_elements(p) AS a LOOP
            IF json_typeof(v_value) IN ('object', 'array') THEN
                v_key := canonlog.duplicate_key_v1(v_value);
                IF v_key IS NOT NULL THEN
                    RETURN v_key;
                END IF;
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END
$body$;
REVOKE ALL ON FUNCTION canonlog.duplicate_key_v1(json) FROM PUBLIC;

-- What keeps a JSON text from being canonical JSON v1, or NULL: the checks in
-- the order the in-memory adapter makes them, each naming what it found.
CREATE FUNCTION canonlog.json_text_problem_v1(p_text text, p_value jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $body$
DECLARE
    v_problem text;
BEGIN
    IF jsonb_path_exists(p_value, 'strict $.**{65}') THEN
        RETURN 'nests deeper than 64 levels';
    END IF;
    SELECT canonlog.number_range_problem_v1(n.token) INTO v_problem
    FROM canonlog.number_tokens_v1(p_text) AS n
    WHERE canonlog.number_range_problem_v1(n.token) IS NOT NULL
    LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    v_problem := canonlog.duplicate_key_v1(p_text::json);
    IF v_problem IS NOT NULL THEN
        RETURN format('has the key %s twice in one object', v_problem);
    END IF;
    -- Canonical with its numbers left out, and every number canonical: this is
    -- how a text with floats in exponent form passes.
    IF canonlog.canonical_text_v1(p_value, 0, false)
           = regexp_replace(p_text, '("(?:[^"\\]|\\.)*")|-?[0-9][-+.eE0-9]*', '\1', 'g')
       AND NOT EXISTS (SELECT FROM canonlog.number_tokens_v1(p_text) AS n
                       WHERE NOT canonlog.is_canonical_number_v1(n.token)) THEN
        RETURN NULL;
    END IF;
    RETURN 'is not in canonical form (canonical JSON v1)';
END
$body$;
REVOKE ALL ON FUNCTION canonlog.json_text_problem_v1(text, jsonb) FROM PUBLIC;

-- What keeps bytes from being a canonical JSON v1 object, or NULL; 'not an
-- object' for NULL and for JSON that is not an object. Bytes that are not UTF-8
-- or not JSON, or hold a string jsonb refuses (U+0000, a lone surrogate), raise
-- the cast's own error. The usual case costs one parse, one canonical writing
-- and one comparison; floats and integers of 19 digits or more have their
-- tokens checked.
CREATE FUNCTION canonlog.json_problem_v1(p bytea)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $body$
DECLARE
    v_text text;
    v_value jsonb;
BEGIN
    IF p IS NULL THEN
        RETURN 'not an object';
    END IF;
    v_text := convert_from(p, 'UTF8');
    v_value := v_text::jsonb;
    IF jsonb_typeof(v_value) <> 'object' THEN
        RETURN 'not an object';
    END IF;
    IF canonlog.canonical_text_v1(v_value, 0, true) = v_text
       AND (v_text !~ '[0-9](\.|[0-9]{18})'
            OR NOT EXISTS (SELECT FROM canonlog.number_tokens_v1(v_text) AS n
                           WHERE NOT canonlog.is_canonical_number_v1(n.token)
                              OR canonlog.number_range_problem_v1(n.token) IS NOT NULL)) THEN
        RETURN NULL;
    END IF;
    RETURN canonlog.json_text_problem_v1(v_text, v_value);
END
$body$;
REVOKE ALL ON FUNCTION canonlog.json_problem_v1(bytea) FROM PUBLIC;

-- Whether an event's payload and metadata are both JSON objects, as append_v2
-- asks it; raises CL020 naming the problem when one is a JSON object that is not
-- canonical JSON v1. Metadata is most often {}, which needs no parsing.
CREATE OR REPLACE FUNCTION canonlog.json_objects_v1(p_payload bytea, p_metadata bytea)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $body$
DECLARE
    v_payload text := canonlog.json_problem_v1(p_payload);
    v_metadata text;
BEGIN
    IF v_payload = 'not an object' THEN
        RETURN false;
    END IF;
    IF p_metadata IS DISTINCT FROM '\x7b7d'::bytea THEN
        v_metadata := canonlog.json_problem_v1(p_metadata);
        IF v_metadata = 'not an object' THEN
            RETURN false;
        END IF;
    END IF;
    IF v_payload IS NOT NULL OR v_metadata IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CL020',
            MESSAGE = 'canonlog: ' || CASE WHEN v_payload IS NOT NULL THEN 'payload ' || v_payload
                                           ELSE 'metadata ' || v_metadata END;
    END IF;
    RETURN true;
END
$body$;
