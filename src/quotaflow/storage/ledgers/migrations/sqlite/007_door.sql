-- Which door a request came in by: chat (/v1/chat/completions), messages (Anthropic
-- Messages), responses (OpenAI Responses), embeddings or gemini (Gemini's own API).
-- Alone in its file: SqliteLedger.open runs it again on every start and skips the error.
ALTER TABLE ledger ADD COLUMN door TEXT NOT NULL DEFAULT 'chat';
