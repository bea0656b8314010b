-- The encoder families of issue 16 (RoBERTa, XLM-RoBERTa, DistilBERT, DeBERTa-v3, ModernBERT):
-- their tiny random Hugging Face fixtures (copied by the test runner where
-- the server can read them; DEPT_HF_MODELS names that directory) register
-- with dept_register_model, train a probe and a DePT adapter and predict in
-- SQL; a sentence-pair adapter trains on each, read with the family's own
-- template ([CLS] a [SEP] b [SEP] with token types on BERT, <s> a </s></s>
-- b </s> on RoBERTa): the stored hyperparameters say "native", prediction
-- and dept_evaluate read it the same way, and the job's test report equals
-- dept_evaluate on the test rows.  The numerics are checked
-- against transformers in test/nn/test_{roberta,xlm_roberta,distilbert,deberta,modernbert}.c.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv models DEPT_HF_MODELS
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
DROP TABLE IF EXISTS fam_reviews, fam_pairs, fam_pairs_test;
CREATE TABLE fam_reviews AS
SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label,
	   CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film number ' ELSE 'a dull and boring film number ' END || i AS body
FROM generate_series(1, 40) i;
CREATE TABLE fam_pairs AS
SELECT CASE WHEN i % 2 = 0 THEN 'same' ELSE 'different' END AS label,
	   'the film number ' || i AS a,
	   CASE WHEN i % 2 = 0 THEN 'the film number ' || i ELSE 'a song about the sea' END AS b
FROM generate_series(1, 40) i;
DELETE FROM dept.adapters WHERE name LIKE 'fam\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'fam\_%';
DELETE FROM dept.models WHERE name LIKE 'fam-%';

SELECT plan(43);

CREATE TEMP TABLE fam_models (model text, dir text, family text);
INSERT INTO fam_models VALUES
	('fam-roberta', :'models' || '/roberta-tiny', 'roberta'),
	('fam-xlmr', :'models' || '/xlm-roberta-tiny', 'xlm-roberta'),
	('fam-distilbert', :'models' || '/distilbert-tiny', 'distilbert'),
	('fam-deberta', :'models' || '/deberta-v3-tiny', 'deberta-v2'),
	('fam-modernbert', :'models' || '/modernbert-tiny', 'modernbert');
SELECT dept_register_model('fam-bert', :'models' || '/bert-tiny') IS NOT NULL AS bert_registered \gset

SELECT is((SELECT string_agg(dept_register_model(model, dir) ->> 'family', ',' ORDER BY model) FROM fam_models),
		  'deberta-v2,distilbert,modernbert,roberta,xlm-roberta', 'the five families register with their family names');
SELECT is((SELECT count(*) FROM dept.models m JOIN fam_models f ON f.model = m.name AND f.family = m.family),
		  5::bigint, 'dept.models records them');

CREATE FUNCTION pg_temp.train_all(method text, extra jsonb) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	f record;
BEGIN
	FOR f IN SELECT * FROM fam_models ORDER BY model LOOP
		RETURN NEXT dept_train('fam_reviews', 'label', 'body',
							   adapter => replace(f.model, '-', '_') || '_' || method, method => method,
							   options => jsonb_build_object('model', f.model) || extra);
	END LOOP;
END $$;

SELECT is((SELECT count(*) FROM pg_temp.train_all('probe', '{"epochs": 2}')), 5::bigint,
		  'a probe trains on each');
SELECT is((SELECT count(*) FROM pg_temp.train_all('dept', '{"prompt_length": 4, "max_length": 24, "max_steps": 3, "batch_size": 8}')),
		  5::bigint, 'a DePT adapter trains on each');
SELECT is((SELECT string_agg(name || ':' || (hyperparameters ->> 'family'), ',' ORDER BY name)
		   FROM dept.adapters WHERE name LIKE 'fam\_%' AND active),
		  'fam_deberta_dept:deberta-v2,fam_deberta_probe:deberta-v2,fam_distilbert_dept:distilbert,fam_distilbert_probe:distilbert,fam_modernbert_dept:modernbert,fam_modernbert_probe:modernbert,fam_roberta_dept:roberta,fam_roberta_probe:roberta,fam_xlmr_dept:xlm-roberta,fam_xlmr_probe:xlm-roberta',
		  'each adapter names its family');
SELECT ok(dept_predict('fam_roberta_probe', 'a fine film') IN ('negative', 'positive'), 'RoBERTa probe predicts');
SELECT ok(dept_predict('fam_xlmr_probe', 'a fine film') IN ('negative', 'positive'), 'XLM-R probe predicts');
SELECT ok(dept_predict('fam_distilbert_probe', 'a fine film') IN ('negative', 'positive'), 'DistilBERT probe predicts');
SELECT ok(dept_predict('fam_roberta_dept', 'a fine film') IN ('negative', 'positive'), 'RoBERTa DePT predicts');
SELECT ok(dept_predict('fam_xlmr_dept', 'a fine film') IN ('negative', 'positive'), 'XLM-R DePT predicts');
SELECT ok(dept_predict('fam_distilbert_dept', 'a fine film') IN ('negative', 'positive'), 'DistilBERT DePT predicts');
SELECT ok(dept_predict('fam_deberta_probe', 'a fine film') IN ('negative', 'positive'), 'DeBERTa probe predicts');
SELECT ok(dept_predict('fam_deberta_dept', 'a fine film') IN ('negative', 'positive'), 'DeBERTa DePT predicts');
SELECT ok(dept_predict('fam_modernbert_probe', 'a fine film') IN ('negative', 'positive'), 'ModernBERT probe predicts');
SELECT ok(dept_predict('fam_modernbert_dept', 'a fine film') IN ('negative', 'positive'), 'ModernBERT DePT predicts');
SELECT is((SELECT count(*) FROM fam_reviews
		   WHERE dept_predict('fam_modernbert_dept', body) = (dept_predict('fam_modernbert_dept', ARRAY[body]))[1]),
		  40::bigint, 'ModernBERT: batched and single predictions agree');
SELECT is((SELECT count(*) FROM fam_reviews
		   WHERE dept_predict('fam_roberta_dept', body) = (dept_predict('fam_roberta_dept', ARRAY[body]))[1]),
		  40::bigint, 'batched and single predictions agree');
SELECT is(dept_train('fam_pairs', 'label', adapter => 'fam_pair', method => 'probe',
					 options => '{"model": "fam-roberta", "text_columns": ["a", "b"], "epochs": 2}'),
		  'fam_pair', 'a sentence-pair adapter trains on RoBERTa');
SELECT ok(dept_predict('fam_pair', 'the film number 3', 'the film number 3') IN ('same', 'different'),
		  'and predicts a pair');
SELECT is(dept_train('fam_pairs', 'label', adapter => 'fam_deberta_pair', method => 'dept',
					 options => '{"model": "fam-deberta", "text_columns": ["a", "b"], "prompt_length": 4, "max_length": 24, "max_steps": 3, "batch_size": 8}'),
		  'fam_deberta_pair', 'a sentence-pair DePT adapter trains on DeBERTa');
SELECT ok(dept_predict('fam_deberta_pair', 'the film number 3', 'the film number 3') IN ('same', 'different'),
		  'and predicts a pair');
SELECT is(dept_train('fam_pairs', 'label', adapter => 'fam_modernbert_pair', method => 'dept',
					 options => '{"model": "fam-modernbert", "text_columns": ["a", "b"], "prompt_length": 4, "max_length": 24, "max_steps": 3, "batch_size": 8}'),
		  'fam_modernbert_pair', 'a sentence-pair DePT adapter trains on ModernBERT');
SELECT ok(dept_predict('fam_modernbert_pair', 'the film number 3', 'the film number 3') IN ('same', 'different'),
		  'and predicts a pair');
SELECT ok(jsonb_array_length(dept_explain('fam_xlmr_dept', 'a fine film', 'gradient_x_input') -> 'tokens') > 0,
		  'explanations name XLM-R''s pieces');
SELECT is((SELECT string_agg(t ->> 'token', '' ORDER BY n)
		   FROM jsonb_array_elements(dept_explain('fam_deberta_dept', 'a fine film', 'gradient_x_input') -> 'tokens')
				WITH ORDINALITY e(t, n)),
		  E'[CLS]\u2581a\u2581fine\u2581film[SEP]', 'and DeBERTa''s, through its input gradient');
SELECT is((SELECT string_agg(t ->> 'token', '|' ORDER BY n)
		   FROM jsonb_array_elements(dept_explain('fam_modernbert_dept', 'a fine film', 'gradient_x_input') -> 'tokens')
				WITH ORDINALITY e(t, n)),
		  E'[CLS]|a|\u0120f|ine|\u0120film|[SEP]', 'and ModernBERT''s byte-level pieces, through its input gradient');
SELECT is((SELECT hyperparameters ->> 'pair_encoding' FROM dept.adapters WHERE name = 'fam_pair' AND active),
		  'native', 'a RoBERTa pair is read with its own template by default');
SELECT is(dept_train('fam_pairs', 'label', adapter => 'fam_bert_pair', method => 'dept',
					 options => '{"model": "fam-bert", "text_columns": ["a", "b"], "prompt_length": 4,
								  "max_length": 32, "max_steps": 6, "batch_size": 8, "test_fraction": 0.25,
								  "seed": 3}'),
		  'fam_bert_pair', 'a BERT DePT pair adapter trains ([CLS] a [SEP] b [SEP], types after the prompt)');
SELECT is((SELECT hyperparameters -> 'pair_encoding' FROM dept.adapters WHERE name = 'fam_bert_pair' AND active),
		  '"native"'::jsonb, 'its hyperparameters say native');
SELECT ok(dept_predict('fam_bert_pair', 'the film number 3', 'the film number 3') IN ('same', 'different'),
		  'dept_predict(adapter, a, b) on the BERT pair adapter');
SELECT is((SELECT count(*) FROM fam_pairs
		   WHERE dept_predict('fam_bert_pair', a, b) = (dept_predict('fam_bert_pair', ARRAY[a], ARRAY[b]))[1]),
		  40::bigint, 'BERT pair: batched and single predictions agree');
CREATE TABLE fam_pairs_test AS SELECT * FROM fam_pairs
	WHERE dept_is_test_row(format('%s: %s %s: %s', 'a', a, 'b', b), label, 0.25);
SELECT is(dept_report('fam_bert_pair') -> 'confusion',
		  dept_evaluate('fam_bert_pair', 'fam_pairs_test', 'label', ARRAY['a', 'b']) -> 'confusion',
		  'BERT pair: the job''s test report equals dept_evaluate(..., text[]) on the test rows');
SELECT is((dept_evaluate('fam_bert_pair', 'fam_pairs', 'label', ARRAY['a', 'b']) ->> 'accuracy')::float8,
		  (SELECT avg((dept_predict('fam_bert_pair', a, b) = label)::int)::float8 FROM fam_pairs),
		  'BERT pair: dept_evaluate counts what dept_predict gets right');
SELECT is(dept_train('fam_pairs', 'label', adapter => 'fam_bert_joined', method => 'probe',
					 options => '{"model": "fam-bert", "text_columns": ["a", "b"], "pair_encoding": "joined",
								  "epochs": 2}'),
		  'fam_bert_joined', 'pair_encoding joined keeps the one-text reading on BERT');
SELECT is((SELECT hyperparameters ->> 'pair_encoding' FROM dept.adapters WHERE name = 'fam_bert_joined' AND active),
		  'joined', 'and says so');

-- bfloat16 products (dept.matmul_precision; AMX or AVX512-BF16 where the CPU has
-- either): every family's DePT adapter gives probabilities within 0.01 of
-- float32's on the 40 reviews, and DePT trains with "precision": "bfloat16".
CREATE TEMP TABLE fam_f32 AS
SELECT a.name, r.body, p.key, p.value::float8 AS prob
FROM dept.adapters a, fam_reviews r, jsonb_each_text(dept_predict_proba(a.name, r.body)) p
WHERE a.name LIKE 'fam\_%\_dept' AND a.active;
SET dept.matmul_precision = bfloat16;
SELECT cmp_ok((SELECT max(abs(p.value::float8 - f.prob))
			   FROM fam_f32 f, jsonb_each_text(dept_predict_proba(f.name, f.body)) p
			   WHERE p.key = f.key), '<=', 0.01::float8,
			  'bfloat16 probabilities of every family within 0.01 of float32''s');
RESET dept.matmul_precision;
SELECT is((SELECT count(DISTINCT name) FROM fam_f32), 5::bigint, 'compared on the five DePT adapters');
-- the backend that packed the weights left them for the next backends to map
-- (ops/packed_file.h), in each model's private copy entry; none where the CPU
-- has no bfloat16 engine
SELECT is((SELECT count(*) FROM pg_ls_dir('pgsql_tmp_dept_models') e,
				  LATERAL pg_stat_file('pgsql_tmp_dept_models/' || e || '/dept-packed-bf16.bin', true) f
		   WHERE f.size > 0),
		  CASE WHEN dept_model_info()->>'bfloat16_engine' = 'none' THEN 0 ELSE 5 END::bigint,
		  'each family''s packed bfloat16 weights are written once for the next backends');
SELECT is(dept_train('fam_reviews', 'label', 'body', adapter => 'fam_roberta_bf16', method => 'dept',
					 options => '{"model": "fam-roberta", "prompt_length": 4, "max_length": 24, "max_steps": 3, "batch_size": 8, "precision": "bfloat16"}'),
		  'fam_roberta_bf16', 'DePT trains on RoBERTa with bfloat16 products');
SELECT is((SELECT hyperparameters ->> 'precision' FROM dept.adapters WHERE name = 'fam_roberta_bf16' AND active),
		  'bfloat16', 'the precision is recorded');

-- float32 panels (dept.packed_weights, ops/gemm_packed.h): the fam_f32
-- probabilities above ran on them; reading the weights where they lie gives
-- the same probabilities (the same sums over k, in order), and the backend
-- left each model's panels for the next backends to map
SET dept.packed_weights = off;
SELECT cmp_ok((SELECT max(abs(p.value::float8 - f.prob))
			   FROM fam_f32 f, jsonb_each_text(dept_predict_proba(f.name, f.body)) p
			   WHERE p.key = f.key), '<=', 1e-6::float8,
			  'float32 probabilities with and without packed panels agree within 1e-6');
RESET dept.packed_weights;
SELECT cmp_ok((SELECT count(*) FROM pg_ls_dir('pgsql_tmp_dept_models') e,
					  LATERAL pg_stat_file('pgsql_tmp_dept_models/' || e || '/dept-packed-f32.bin', true) f
			   WHERE f.size > 0),
			  '>=', CASE WHEN (dept_model_info()->>'float32_panels')::bool THEN 5 ELSE 0 END::bigint,
			  'each family''s float32 panels are written once for the next backends');
SELECT is((dept_model_info()->>'float32_panels_private_bytes')::bigint, 0::bigint,
		  'after six models in turn this backend holds no private panels: each model''s file replaced only its own copies');

SELECT * FROM finish();
DROP TABLE fam_reviews, fam_pairs, fam_pairs_test;
DELETE FROM dept.adapters WHERE name LIKE 'fam\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'fam\_%';
DELETE FROM dept.models WHERE name LIKE 'fam-%';
