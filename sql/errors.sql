-- a bad dept.model_path gives a clear error, and the backend stays usable
SET dept.model_path = '/nonexistent/dept-model';
SELECT dept_embed('x');
SELECT dept_tokenize('x');
SET dept.model_path = '/etc';
SELECT dept_embed('x');
RESET dept.model_path;
SELECT array_length(dept_embed('x'), 1) AS recovered;
-- the GUC prefix is reserved
SET dept.no_such_setting = 1;
-- dept.threads is bounded
SET dept.threads = 0;
SET dept.threads = 2;
SELECT array_length(dept_embed('two threads'), 1) AS dims;
RESET dept.threads;
-- only superusers may point the extension at a server directory
CREATE ROLE dept_regress_user;
SET ROLE dept_regress_user;
SET dept.model_path = '/tmp';
RESET ROLE;
DROP ROLE dept_regress_user;
