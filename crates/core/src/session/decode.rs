//! A trainer's key/value-cached decoder: the model's GPT-2 structure, if it has one, with the
//! trainer's current weights (whole tensors, whatever the layout: shards are assembled).

use super::trainer::Trainer;
use crate::error::{Error, Result};
use crate::exec::{Backend, HostData};
use crate::generate::{KvDecoder, gpt2_shape};

impl<B: Backend> Trainer<B> {
    /// The cached decoder of this model, or (`Err` inside `Ok`) why it has none, a sentence
    /// the caller reports before falling back to full-window recomputation.
    pub fn kv_decoder(&self) -> Result<std::result::Result<KvDecoder, String>> {
        let shape = match gpt2_shape(&self.model) {
            Ok(s) => s,
            Err(why) => return Ok(Err(format!("the model is not a GPT-2: {why}"))),
        };
        let decoder = KvDecoder::new(shape, |name| match self.parameter(name)? {
            HostData::F32(v) => Ok(v),
            other => Err(Error::internal(format!(
                "parameter '{name}' is {}",
                other.dtype()
            ))),
        });
        match decoder {
            Ok(d) => Ok(Ok(d)),
            // A pipeline spread over processes: this process does not hold every weight.
            Err(Error::Unsupported { message, .. }) => Ok(Err(message)),
            Err(e) => Err(e),
        }
    }
}
