//! The chat template. SmolLM2 (and many llama-family models) use ChatML:
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
//! `<|im_start|>assistant\n` to ask for a reply; SmolLM2's template also
//! inserts a default system message when the conversation has none. A Jinja
//! engine is more than that needs: the file's template is recognised as
//! ChatML and its default system prompt read out of it; any other template
//! is a typed error, so nothing is rendered wrongly in silence.

use crate::gguf::{shown_name, Gguf};

/// What `--system` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemPrompt {
    /// No `--system`: whatever the template does (SmolLM2: its default).
    Template,
    /// `--system TEXT`.
    Text(String),
    /// `--system ''`: no system message at all.
    Omit,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("the model has no tokenizer.chat_template; run without --chat (plain completion)")]
    NoTemplate,
    #[error(
        "the chat template is not ChatML (no <|im_start|> / <|im_end|>), which is the one template this runner \
         renders; it begins {0:?}"
    )]
    Unsupported(String),
}

/// A recognised ChatML template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    /// The system message the template inserts when the conversation has none.
    default_system: Option<String>,
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

impl ChatTemplate {
    /// # Errors
    /// No template in the file, or one that is not ChatML.
    pub fn from_gguf(g: &Gguf) -> Result<ChatTemplate, ChatError> {
        let t = g.get_str("tokenizer.chat_template").ok_or(ChatError::NoTemplate)?;
        Self::parse(t)
    }

    /// # Errors
    /// A template that is not ChatML.
    pub fn parse(template: &str) -> Result<ChatTemplate, ChatError> {
        if !(template.contains(START) && template.contains(END)) {
            return Err(ChatError::Unsupported(shown_name(template)));
        }
        // A literal system turn in the template is its default system
        // message: `'<|im_start|>system\n...<|im_end|>`.
        let marker = format!("{START}system\n");
        let default_system = template.find(&marker).and_then(|i| {
            let rest = &template[i + marker.len()..];
            rest.find(END).map(|j| rest[..j].to_string())
        });
        Ok(ChatTemplate { default_system })
    }

    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The opening of a conversation: its system message (if any) and the
    /// first user turn, ending with the assistant's header.
    pub fn first_turn(&self, system: &SystemPrompt, user: &str) -> String {
        let system = match system {
            SystemPrompt::Template => self.default_system.clone(),
            SystemPrompt::Text(s) => Some(s.clone()),
            SystemPrompt::Omit => None,
        };
        let mut out = String::new();
        if let Some(s) = system {
            out.push_str(&message("system", &s));
        }
        out.push_str(&self.next_turn(user));
        out
    }

    /// A later user turn, after the assistant's reply was closed with
    /// [`ChatTemplate::end_of_reply`].
    pub fn next_turn(&self, user: &str) -> String {
        format!("{}{START}assistant\n", message("user", user))
    }

    /// What closes the assistant's reply in the history.
    pub fn end_of_reply(&self) -> String {
        format!("{END}\n")
    }
}

fn message(role: &str, content: &str) -> String {
    format!("{START}{role}\n{content}{END}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's tokenizer.chat_template, verbatim.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_renders_as_its_jinja_would() {
        let t = ChatTemplate::parse(SMOLLM2).unwrap();
        assert_eq!(t.default_system(), Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
        assert_eq!(
            t.first_turn(&SystemPrompt::Template, "Hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.first_turn(&SystemPrompt::Text("Be brief.".into()), "Hi"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.first_turn(&SystemPrompt::Omit, "Hi"), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        assert_eq!(
            t.end_of_reply() + &t.next_turn("And?"),
            "<|im_end|>\n<|im_start|>user\nAnd?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn other_templates_are_refused() {
        let llama3 = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{% endfor %}";
        assert!(matches!(ChatTemplate::parse(llama3), Err(ChatError::Unsupported(_))));
        let plain_chatml =
            "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}";
        assert_eq!(ChatTemplate::parse(plain_chatml).unwrap().default_system(), None);
    }
}
