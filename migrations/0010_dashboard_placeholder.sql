-- PLACEHOLDER on branch guard-req16 only: version 10 belongs to the
-- dashboard's 0010_dashboard_indexes.sql (issue 11), not yet on main when
-- 0011 was written. At merge, drop this file and its MIGRATIONS entry in
-- favour of the dashboard's migration.
SELECT 1;
