-- dept_embed / dept_tokenize / dept_cosine on the default model
SELECT array_length(dept_embed('hello world'), 1) AS dims;
-- unit length (L2-normalised)
SELECT round(sqrt(sum(v * v))::numeric, 5) AS norm FROM unnest(dept_embed('hello world')) v;
-- first components, to 4 decimals (reference: -0.0515, -0.0549, -0.0077)
SELECT i, round(v::numeric, 4) AS v
FROM unnest(dept_embed('hello world')) WITH ORDINALITY AS t(v, i) WHERE i <= 3;
SELECT dept_tokenize('hello world') AS ids;
SELECT dept_tokenize('') AS empty;
-- text longer than 128 tokens is truncated to 128
SELECT array_length(dept_tokenize(repeat('word ', 500)), 1) AS truncated;
SELECT array_length(dept_embed(repeat('word ', 500)), 1) AS long_text_dims;
-- the same text gives the same vector, whatever else is in the statement
SELECT dept_embed('same text') = dept_embed('same text') AS deterministic;
-- similar meanings are closer than unrelated ones
SELECT dept_cosine(dept_embed('the movie was great'), dept_embed('a wonderful film'))
     > dept_cosine(dept_embed('the movie was great'), dept_embed('interest rates rose')) AS closer;
SELECT round(dept_cosine('{1,0}', '{0,1}')::numeric, 3) AS orthogonal,
       dept_cosine('{0,0}', '{1,1}') AS zero_is_null;
SELECT dept_cosine('{1,2,3}', '{1,2}');
SELECT dept_embed(NULL) IS NULL AS strict;
SELECT (dept_model_info() ->> 'family') AS family, (dept_model_info() ->> 'd_out')::int AS d_out;
