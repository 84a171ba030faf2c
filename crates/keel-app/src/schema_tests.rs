//! The request schemas of the OpenAPI document against the parsers: utoipa's attributes take
//! only literal numbers, so every limit a component's request type documents is checked here
//! against the constant its parser enforces.

use serde_json::{Value, json};
use utoipa::PartialSchema;

fn schema<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap()
}

/// The request schemas' numbers are literals (utoipa's attributes take no constants): they
/// must be the limits the parsers enforce.
#[test]
fn request_schemas_state_the_limits_the_parsers_enforce() {
    use crate::auth::model::{CredentialsRequest, Email, Password};
    use crate::brands::model::{BrandName, CreateBrandRequest};
    use crate::items::model::{
        CreateItemRequest, ItemName, MAX_DESCRIPTION_CHARS, MAX_TAG_CHARS, MAX_TAGS,
    };
    use crate::money::Price;
    use crate::orders::model::{MAX_LINES, OrderLineRequest, Qty, Sku};
    use crate::paging::Limit;
    use crate::surveys::model::{Comment, CompleteSurveyRequest, MAX_REFERENCE_CHARS};

    let max_price = json!(Price::MAX_CENTS / 100);
    let credentials = schema::<CredentialsRequest>()["properties"].clone();
    assert_eq!(credentials["email"]["maxLength"], json!(Email::MAX_LEN));
    assert_eq!(
        credentials["password"]["minLength"],
        json!(Password::MIN_CHARS)
    );
    assert_eq!(
        credentials["password"]["maxLength"],
        json!(Password::MAX_CHARS)
    );
    let brand = schema::<CreateBrandRequest>()["properties"].clone();
    assert_eq!(brand["name"]["maxLength"], json!(BrandName::MAX_CHARS));
    let item = schema::<CreateItemRequest>()["properties"].clone();
    assert_eq!(item["name"]["maxLength"], json!(ItemName::MAX_CHARS));
    assert_eq!(item["brand"]["maxLength"], json!(BrandName::MAX_CHARS));
    assert_eq!(item["price"]["maximum"], max_price);
    assert_eq!(
        item["description"]["maxLength"],
        json!(MAX_DESCRIPTION_CHARS)
    );
    assert_eq!(item["tags"]["maxItems"], json!(MAX_TAGS));
    assert_eq!(item["tags"]["items"]["maxLength"], json!(MAX_TAG_CHARS));
    let line = schema::<OrderLineRequest>()["properties"].clone();
    assert_eq!(line["qty"]["maximum"], json!(Qty::MAX));
    assert_eq!(line["price"]["maximum"], max_price);
    assert_eq!(
        line["sku"]["pattern"],
        json!(format!("^[A-Za-z0-9_-]{{1,{}}}$", Sku::MAX_CHARS))
    );
    let order = schema::<crate::orders::model::CreateOrderRequest>();
    assert_eq!(order["properties"]["lines"]["maxItems"], json!(MAX_LINES));
    let survey = schema::<crate::surveys::model::CreateSurveyRequest>()["properties"].clone();
    assert_eq!(survey["caseId"]["maxLength"], json!(MAX_REFERENCE_CHARS));
    assert_eq!(
        survey["customerId"]["maxLength"],
        json!(MAX_REFERENCE_CHARS)
    );
    let complete = schema::<CompleteSurveyRequest>()["properties"].clone();
    assert_eq!(complete["comment"]["maxLength"], json!(Comment::MAX_CHARS));
    let get_data = schema::<crate::items::filter::GetDataRequest>()["properties"].clone();
    assert_eq!(get_data["limit"]["maximum"], json!(Limit::MAX));
}
