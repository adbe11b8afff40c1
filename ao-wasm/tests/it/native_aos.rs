//! HyperBEAM's standalone aos builds through the aos ABI.

use crate::common::*;

#[test]
fn aos_eval_vectors_byte_for_byte() {
    let vectors: serde_json::Value =
        serde_json::from_slice(&fixture("vectors/aos-eval.json")).unwrap();
    let engine = engine();
    let module = load(&engine, vectors["module"].as_str().unwrap());
    let env = vectors["env_json"].as_str().unwrap();
    let mut aos = aos(&module);
    for (i, step) in vectors["steps"].as_array().unwrap().iter().enumerate() {
        let msg = step["msg_json"].as_str().unwrap();
        assert_eq!(msg, eval_msg(i + 1, step["code"].as_str().unwrap()));
        let result = aos.handle(msg, env).unwrap();
        assert_eq!(result, step["result_json"].as_str().unwrap(), "step {i}");
    }
    assert_eq!(aos.instance().undefined_calls(), 0);
}
