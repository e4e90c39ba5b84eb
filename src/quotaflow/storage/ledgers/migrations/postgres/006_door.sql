-- Which door a request came in by: chat (/v1/chat/completions), messages (Anthropic
-- Messages), responses (OpenAI Responses), embeddings or gemini (Gemini's own API).
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS door TEXT NOT NULL DEFAULT 'chat';
